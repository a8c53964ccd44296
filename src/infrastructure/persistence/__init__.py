"""SQL persistence: tables, migrations, repositories, unit of work, job reads and the report data source."""
