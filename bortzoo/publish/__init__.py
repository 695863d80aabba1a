"""Publishing: a finished run folder read back (`run_folder`), its model card (`cards`), the Hub folder built
offline (`build`), then checked against the Hub and uploaded (`upload`, the `bortzoo publish` verb)."""
