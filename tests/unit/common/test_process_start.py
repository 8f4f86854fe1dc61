"""What a platform process does once its services are up: start-up objects leave the collector's sight."""

import gc

from aitrading import cli


def test_startup_objects_are_frozen_once_the_services_are_up() -> None:
    gc.unfreeze()
    keep = [object() for _ in range(1000)]
    try:
        cli._freeze_startup_objects()
        assert gc.get_freeze_count() >= len(keep)
    finally:
        gc.unfreeze()
