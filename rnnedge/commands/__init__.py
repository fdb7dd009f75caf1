"""One module per `rnnedge` command; `rnnedge.cli` assembles them."""
