"""The gateway's own routes: the admin API (fleet, quarantine, reload) behind one seam, and the
endpoints every gateway answers itself (models, health, readiness, version, metrics)."""
