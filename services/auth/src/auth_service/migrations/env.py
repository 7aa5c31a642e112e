from auth_service.models import Base
from modelgate_shared.migrations_env import run

run(Base.metadata, "alembic_version_auth")
