"""``GET /metrics``: this process's metrics in the Prometheus text format (API_CONTRACT.md §4).

Nothing on a hot path touches ``prometheus_client``: the parts of the server count in plain int
attributes they already own (a node's frames, a broker's publications, an actor's restarts),
and the store calls and fan-outs are timed into plain bucket lists (``histogram.py``). All of
it is read only when a scraper asks, by one custom collector (``collector.py``) registered on a
``CollectorRegistry`` of each application (``registry.py``; tests run several in one process).

* ``histogram.py``: ``Histogram``, a bucket list with ``bisect`` (sans-I/O);
* ``measured_store.py``: ``MeasuredStore``, the ``Store`` every call of which is timed, counting
  the accepted messages and the outbox's outcomes on the way;
* ``fanout.py``: ``FanoutClock``, when a stored event's frames have been written on this node;
* ``collector.py``: ``MessengerCollector``, every ``messenger_*`` family at scrape time;
* ``registry.py``: ``Metrics``, an application's registry and what it watches.
"""
