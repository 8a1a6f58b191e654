"""Development tools shared by the tests and the scripts (load, bench).

Not part of the installed package: real servers on free loopback ports,
process helpers and a tiny HTTP client. Every server started here is stopped
by its PID and dies with the process that started it, even when that process
is killed (see `processes.die_with_parent`).
"""
