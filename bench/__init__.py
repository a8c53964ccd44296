"""`make bench`: reportgen's production mode under load, beside a minimal floor app and bare arq (see README.md)."""
