"""The long-running side: triggers (schedule, webhooks), one run at a time, HTTP, leader election."""
