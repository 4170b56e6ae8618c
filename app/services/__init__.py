"""Domain operations: each takes the acting principal (`Actor`) and plain data, checks what the
actor may do, and works through the Vault adapter (`app.vault`). Never Flask, never hvac."""
