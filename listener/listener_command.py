"""`ha-ingestor listener`: run the listener until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from config.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Everything else comes from the environment."""
    parser.add_argument(
        "--trace-frames",
        metavar="PATH",
        type=Path,
        help="write every WebSocket frame to and from HA to PATH (as HA_TRACE_FRAMES does)",
    )


def run(args: argparse.Namespace) -> int:
    from config.logging_setup import configure_logging
    from listener.data_dir_lock import DataDirBusy
    from listener.service import EXIT_CONFIG, build_listener

    settings = get_settings()
    if args.trace_frames is not None:
        settings = settings.model_copy(update={"ha_trace_frames": args.trace_frames})
    configure_logging(settings.log_level, settings.secrets())
    try:
        service = build_listener(settings)
    except DataDirBusy as exc:
        print(f"ha-ingestor listener: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(service.run())
