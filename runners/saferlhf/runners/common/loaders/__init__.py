"""One module per source format; saferlhf.runners.common.data dispatches to them."""
