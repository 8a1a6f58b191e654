"""gunicorn's own defaults: a config file that sets nothing.

Without `-c`, gunicorn reads `./gunicorn.conf.py` from its working
directory (gunicorn/app/base.py, `get_default_config_file`), and our
servers run from the project root, where that is the shipped config. A
server meant to run with none of it (`GunicornServer(conf=None)`: the
bench's bare ceiling and its session pair) is given this file instead.
"""
