"""One crawl shared by any number of harvesters and downloader nodes through Redis.

With ``--broker redis://...`` (or ``rediss://``) and ``--crawl NAME`` the crawl lives
in Redis instead of one harvester's SQLite file and manager:

* ``keys.py``: the key layout; hosts hashed onto partitions, one hash tag each.
* ``connection.py``: redis-py from the URL (a Redis Cluster found by itself), the
  password from the URL, the environment or a 0600 file, never shown.
* ``store.py``: every operation on the crawl's state, each atomic in one partition
  (Lua), so any harvester can take a partition over and lose nothing.
* ``ownership.py``: which live harvester owns which partition (renewable leases).
* ``harvester.py``: a harvester doing, for the partitions it owns, what the embedded
  harvester does for the whole crawl.
* ``nodewire.py``: the downloader nodes' ``RawWire`` over Redis Streams.
"""
