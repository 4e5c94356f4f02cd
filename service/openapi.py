"""Print the OpenAPI document the app serves (``make openapi`` commits it)."""

import json

from service.app import create_app

if __name__ == "__main__":
    print(json.dumps(create_app().openapi(), indent=2, sort_keys=True))
