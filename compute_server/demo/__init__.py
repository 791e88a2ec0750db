"""``headsplat demo``: the whole product on the embedded defaults, into one folder."""
