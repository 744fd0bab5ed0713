"""Who a request comes from: API keys and their tenants, and the limits that apply to them."""
