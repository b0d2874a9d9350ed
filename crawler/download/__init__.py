"""A downloader node: its entry (gevent first), the loop (lease -> fetch -> commit ->
report), the image fetch and the committer, and nodes of several processes."""
