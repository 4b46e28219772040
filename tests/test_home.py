from l1web import __version__


def test_home_page_renders_for_browsers(client):
    response = client.get("/", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert b"L1 rendering server" in response.data
    assert b"/static/vendor/htmx.min.js" in response.data


def test_home_answers_json_to_api_clients(client):
    response = client.get("/", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.json["version"] == __version__
    assert response.json["public_url"] == "http://127.0.0.1:8100"


def test_unknown_path_is_a_json_404_for_api_clients(client):
    response = client.get("/no/such/page", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
    assert response.json["message"]


def test_unknown_path_is_an_html_404_for_browsers(client):
    response = client.get("/no/such/page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert b"404" in response.data and b"<html" in response.data
