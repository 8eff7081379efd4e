"""``python -m esl_controller``: the same entry point as the ``esl-controller`` console script."""

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

    import sys

    from esl_controller.cli import main

    sys.exit(main())
