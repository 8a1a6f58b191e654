"""The token layer's error bodies: one member, as flask-jwt-extended answers."""

NO_HEADER = {"error": "Missing Authorization Header"}
BAD_HEADER = {"error": "Bad Authorization header. Expected value 'Bearer <JWT>'"}
EXPIRED = {"error": "Token has expired"}
REVOKED = {"error": "Token has been revoked"}
ONLY_ACCESS = {"error": "Only access tokens are allowed"}
ONLY_REFRESH = {"error": "Only refresh tokens are allowed"}
DELETED_USER = {"error": "Unknown user."}


def assert_validation_error(result, message):
    """400 with the example's two-member body: a handler's own validation answer."""
    assert result.status_code == 400, result.text
    assert result.json == {"error": "Bad Request", "message": message}
