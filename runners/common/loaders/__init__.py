"""One module per source format; runners/common/data.py dispatches to them."""
