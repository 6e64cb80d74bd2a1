"""AGI script handlers written in Python (most flows are data in ivr_flows/)."""
