"""How nodes reach the broker: the ``BrokerClient`` interface and the wires that carry it,
chosen by URL scheme (``connect``, ``serve``)."""
