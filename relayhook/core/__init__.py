"""The pure core: what Relayhook computes, with no I/O.

Events, records, templating, connectors, authentication checks, mapping, hooks, routing, the
outbound request, retry and pacing arithmetic, the SSRF address rules, outcomes, samples and the
rules of diagnostics. Nothing here opens a file, a socket or a database: the import-linter contract
"The pure core imports no I/O library and no edge" (pyproject.toml) keeps the whole subpackage
so, and a new module placed here is guarded without being listed anywhere.
"""
