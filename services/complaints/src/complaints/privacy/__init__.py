"""Data-subject requests: complaints receives them, works on its own data and gathers the rest.

- `state`: the request's record and its status rules (no I/O);
- `data`: complaints' own data of a subject: its export and its erasure;
- `desk`: the worker part that carries requests out, in bounded rounds;
- `handlers`: privacy.events (other services' erasure reports, a marketplace's redaction);
- `api`: `/v1/privacy/requests` for the buyer and the operator.
"""
