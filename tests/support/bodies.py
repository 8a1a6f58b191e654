"""Request and response bodies the tests share, from the example's README."""

# GET /api/ships/2, as the README shows it.
SHIP_2 = {
    "affiliation": "Empire",
    "category": "Starfighters",
    "crew": 1,
    "id": 2,
    "length": 7,
    "manufacturer": "Sienar Fleet Systems",
    "model": "TIE/LN Starfighter",
    "roles": ["Space Superiority Starfighter"],
    "ship_class": "Starfighter",
}

# The same ship as a create/replace request body (no id).
TIE_FIGHTER = {key: value for key, value in SHIP_2.items() if key != "id"}

# The README's `POST /api/ships` request body.
STAR_DESTROYER = {
    "ship_class": "Star Destroyer",
    "model": "Imperial I-class Star Destroyer",
    "affiliation": "Empire",
    "category": "Capital Ships",
    "crew": 37085,
    "length": 1600,
    "manufacturer": "Kuat Drive Yards",
    "roles": ["Destroyer", "Carrier", "Military Transport", "Command Ship"],
}
