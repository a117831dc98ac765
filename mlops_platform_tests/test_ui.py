"""`dg dev` serves the code location: the UI's GraphQL API lists our assets and checks."""

import json

import pytest

from mlops_platform_tests.checkout import ASSET_NODES, VENV, checkout, dev_server, graphql
from mlops_platform_tests.pipeline import DATA_HALF

pytestmark = pytest.mark.slow

# Connection strings with credentials, as a scale-out deployment sets them in the environment.
MLFLOW_SECRET = "mlflow-pw-7f3a"
REDIS_SECRET = "redis-pw-91c2"
SECRET_ENV = {
    "MLOPS_MLFLOW_TRACKING_URI": f"postgresql://mlops:{MLFLOW_SECRET}@127.0.0.1:5432/test",
    "MLOPS_REDIS_URL": f"127.0.0.1:6379,password={REDIS_SECRET}",
}

RESOURCES_QUERY = """query ($location: String!, $repository: String!) {
  allTopLevelResourceDetailsOrError(
    repositorySelector: {repositoryLocationName: $location, repositoryName: $repository}
  ) { ... on ResourceDetailsList { results { name configuredValues { key value type } } } }
}"""
WORKSPACE_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { ... on RepositoryLocation { repositories { name } } } } } } }"""


@pytest.fixture
def dg_dev(cli_env, adult_settings, tmp_path):
    """`dg dev` in the repository root, on the small Adult spec, with secrets in its environment;
    yields its port."""
    adult_settings.home.mkdir(parents=True)
    env = {**cli_env, **SECRET_ENV, "VIRTUAL_ENV": str(VENV)}
    with dev_server(["dg", "dev"], env, checkout(tmp_path)) as port:
        yield port


def test_dg_dev_shows_the_data_half_and_no_secret(dg_dev):
    nodes = json.loads(graphql(dg_dev, ASSET_NODES))["data"]["assetNodes"]
    shown = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert set(shown) >= DATA_HALF
    raw_checks = {c["name"]: c["blocking"] for c in shown["raw_data"]["assetChecksOrError"]["checks"]}
    assert raw_checks == {"great_expectations_suite": True, "quarantine_rate": True}
    assert shown["training_set"]["assetChecksOrError"]["checks"][0]["name"] == "training_set_is_sound"
    assert len(shown["stg_records"]["assetChecksOrError"]["checks"]) == 4  # dbt tests
    assert shown["raw_data"]["groupName"] == "ingestion"

    # The resource page (what the UI's "Resources" tab shows): the variables' names, never their values.
    entry = json.loads(graphql(dg_dev, WORKSPACE_QUERY))["data"]["workspaceOrError"]["locationEntries"][0]
    repository = entry["locationOrLoadError"]["repositories"][0]["name"]
    text = graphql(dg_dev, RESOURCES_QUERY, {"location": entry["name"], "repository": repository})
    resources = {
        r["name"]: {v["key"]: v for v in r["configuredValues"]}
        for r in json.loads(text)["data"]["allTopLevelResourceDetailsOrError"]["results"]
    }
    assert resources["mlflow"]["tracking_uri"]["type"] == "ENV_VAR"
    assert resources["mlflow"]["tracking_uri"]["value"] == "MLOPS_MLFLOW_TRACKING_URI"
    assert resources["feast"]["redis_url"]["type"] == "ENV_VAR"
    assert MLFLOW_SECRET not in text and REDIS_SECRET not in text
