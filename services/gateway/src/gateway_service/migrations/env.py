from gateway_service.request_log import metadata
from modelgate_shared.migrations_env import run

run(metadata, "alembic_version_gateway")
