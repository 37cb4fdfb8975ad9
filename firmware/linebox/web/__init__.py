"""The web portal served by the appliance (docs/web.md): pages and a JSON API over the
same store, lamps and bus as the phone."""
