"""``python -m esl_controller.testing``: run the fake FreeSWITCH event socket (see peer.main)."""

from gevent import monkey

monkey.patch_all()

from esl_controller.testing.peer import main  # noqa: E402

raise SystemExit(main())
