"""Handing events to the broker durably: the publisher thread, broker batches, the disk spool,
the hand-off watermark and how full the broker and spool are."""
