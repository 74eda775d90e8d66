# The course hub's JupyterHub settings: the tested reference `make classroom` runs (see the README's "The class").
#
# Everything machine-specific comes from classroom.json in the folder named by $VITCOURSE_CLASSROOM, written by
# `python -m vitcourse.hub.classroom start`. A real deployment (TLJH, Zero to JupyterHub) needs the same pieces:
# * every single-user server runs the course environment (JupyterLab, vitsteps, nbgrader's extensions);
# * nbgrader's formgrader and course list only in the instructor's server (off for everyone in the environment's
#   etc/jupyter, back on in the instructor's ~/.jupyter);
# * one nbgrader_config.py every user reads, with c.Exchange.root and c.CourseDirectory.course_id;
# * home folders only their owner can read (here: real users, homes 0700, LocalProcessSpawner).
import json
import os
from pathlib import Path

c = get_config()  # noqa: F821 - provided by traitlets when JupyterHub loads this file

state = Path(os.environ["VITCOURSE_CLASSROOM"])
setup = json.loads((state / "classroom.json").read_text(encoding="utf-8"))
env = Path(setup["course_env"])

c.JupyterHub.ip = "127.0.0.1"  # the proxy's public side: this machine only
c.JupyterHub.port = setup["port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = setup["hub_port"]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{setup['proxy_api_port']}"
c.ConfigurableHTTPProxy.command = [setup["proxy"]]
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
c.ConfigurableHTTPProxy.auth_token = (state / "proxy_token").read_text(encoding="utf-8").strip()
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "hub.pid")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every user's server
c.JupyterHub.cleanup_proxy = True

c.JupyterHub.authenticator_class = "vitcourse.hub.auth.ClassroomAuthenticator"
c.ClassroomAuthenticator.passwords_file = str(state / "passwords.json")
c.Authenticator.allowed_users = set(setup["students"]) | {setup["instructor"]}

# an API token for the machine's administrator (tests, the benchmark): accounts, servers, tokens; no user's files
c.JupyterHub.services = [{"name": "classroom-admin",
                          "api_token": (state / "admin_token").read_text(encoding="utf-8").strip()}]
c.JupyterHub.load_roles = [{"name": "classroom-admin", "services": ["classroom-admin"],
                            "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:users"]}]

if setup["real_users"]:
    # each account a system user; the server runs with that user's uid, in its home (mode 0700)
    c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
else:
    # one system user for all: a single-user demo (make classroom says which isolation is missing)
    c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
    c.SimpleLocalProcessSpawner.home_dir_template = str(state / "homes" / "{username}")
# nothing of the hub's own environment reaches a user's server (JupyterHub keeps PYTHONPATH by default: the
# course tooling would then be importable by every student)
c.Spawner.env_keep = ["LANG", "LC_ALL", "TZ"]
c.Spawner.cmd = [str(env / "bin" / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 600  # a loaded machine starts 60 JupyterLabs at once slowly
c.Spawner.http_timeout = 600
c.Spawner.args = ["--ServerApp.shutdown_no_activity_timeout=0"]


def _environment(spawner):
    """PATH into the course environment; a mark `make classroom-stop` finds every server of this hub by."""
    spawner.environment = {**spawner.environment, "PATH": f"{env / 'bin'}:/usr/local/bin:/usr/bin:/bin",
                           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "VITCOURSE_CLASSROOM_OF": str(state)}


c.Spawner.pre_spawn_hook = _environment
