"""Domain operations taking an actor: never Flask, never hvac."""
