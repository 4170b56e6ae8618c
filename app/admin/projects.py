"""Projects: a child namespace of the org with its own keys and policy."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from ..services import projects, rotation, signing
from .auth import actor
from .context import config, vault
from .pages import LINK, PageArgs, answer
from .schemas import Jwks, Project, ProjectCreate, ProjectPatch

blp = Blueprint(
    "projects",
    __name__,
    url_prefix="/api/v1/orgs/<slug:org>/projects",
    description="Projects (a Vault namespace each).",
)


@blp.route("")
class Projects(MethodView):
    @blp.arguments(ProjectCreate)
    @blp.response(201, Project)
    def post(self, data, org):
        """Create a project: namespace, transit keys, KV, policy (all or nothing)."""
        created = projects.create(
            vault(),
            actor(),
            org=org,
            slug=data["slug"],
            display_name=data.get("display_name", data["slug"]),
            allowed_origins=data["allowed_origins"],
        )
        rotation.apply_settings(vault(), config(), org, data["slug"])  # history length, auto-rotation
        return created

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, Project(many=True), headers=LINK)
    def get(self, args, org):
        """List the org's projects (a page: see `Link`)."""
        return answer(projects.list_all(vault(), actor(), org, **args), args)


@blp.route("/<slug:project>")
class ProjectById(MethodView):
    @blp.response(200, Project)
    def get(self, org, project):
        """Show a project."""
        return projects.show(vault(), actor(), org, project)

    @blp.arguments(ProjectPatch)
    @blp.response(200, Project)
    def patch(self, data, org, project):
        """Change a project's display name or allowed origins."""
        return projects.update(vault(), actor(), org, project, data)

    @blp.response(204)
    def delete(self, org, project):
        """Delete a project and its namespace: its keys can never be decrypted again."""
        projects.delete(vault(), actor(), org, project)


@blp.route("/<slug:project>/jwks.json")
class ProjectJwks(MethodView):
    @blp.response(200, Jwks)
    def get(self, org, project):
        """Public keys that verify the project's tokens."""
        return signing.project_jwks(vault(), actor(), org, project)
