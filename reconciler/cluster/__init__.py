"""The only place that talks to Kubernetes: listing managed objects, applying, deleting, leases."""
