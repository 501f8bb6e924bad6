"""Grafana dashboards and alert rules as code, for the ClickHouse data source plugin.

``queries`` holds the SQL, ``macros`` expands the plugin's macros (for the tests, which
run every query on chdb), ``dashboards`` and ``alerts`` build the JSON and the
provisioning documents, and ``generate`` writes them under ``grafana/``.
"""
