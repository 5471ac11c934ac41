"""Allowance settings: one module, every difference between environments comes from the environment.

The embedded default (no variables set) is the local demo that `make run` starts: SQLite and
Celery's filesystem broker under `var/`, mail to the console, the local payment gateway. Production
sets DEBUG=false, SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, REDIS_URL, EMAIL_URL (see README).
"""

import hashlib
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Absolute base of links in emails (invitations, password resets); no request is at hand in a job.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    # Serves Swagger UI's assets for /api/v1/docs from our origin (ninja's CDN template otherwise).
    "ninja",
    "tenants",
    "plans",
    "credits",
    "licensing",
    "sessions_billing",
    "billing_portal",
]

MIDDLEWARE = [
    # First: an API request goes through API_MIDDLEWARE (below) instead of the rest of this list.
    "config.middleware.ApiMiddlewareChain",
    # Outermost of both chains: HEAD is answered as GET, without the body.
    "config.middleware.HeadAsGetMiddleware",
    # Next: every error answer under /api/ gets the API's error shape, whichever
    # layer made it (a Host we do not serve is refused by SecurityMiddleware, before any other).
    "config.middleware.ApiErrorShapeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "config.middleware.PermissionsPolicyMiddleware",
    # A compressed request body is refused (415), before anything reads it.
    "config.middleware.ContentEncodingMiddleware",
    "config.middleware.PageMethodNotAllowedMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads the session, the user or a form: a NUL never reaches PostgreSQL.
    "config.middleware.RejectNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "config.middleware.CommonMiddleware",  # Django's, redirecting only GET and HEAD to the slash
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a lockout raised by the backend into a response.
    "axes.middleware.AxesMiddleware",
]
# The page middleware: what only pages read (the session, the user, messages, CSRF's cookie, htmx,
# the login lockout) or serve (static files). Nothing under /api/ uses it, and it adds nothing to an
# API answer, so API requests skip it (config.middleware.ApiMiddlewareChain): the integration API is
# the hot path, and this middleware was about a quarter of its Python time per request.
PAGE_ONLY_MIDDLEWARE = {
    "config.middleware.PageMethodNotAllowedMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
}
API_MIDDLEWARE = [m for m in MIDDLEWARE[1:] if m not in PAGE_ONLY_MIDDLEWARE]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenants.context_processors.navigation",
            ],
        },
    },
]


def conn_max_age(argv: Sequence[str], configured: int) -> int:
    """Seconds a database connection outlives its request. runserver serves each request on a new
    thread, and a persistent connection belongs to its thread: kept, they pile up idle (80+ seen)
    until PostgreSQL refuses new ones. gunicorn's and Celery's workers reuse theirs."""
    command = argv[1] if len(argv) > 1 else ""
    return 0 if command == "runserver" else configured


DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'allowance.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default: a web server and a worker share the file; wait instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
else:
    DATABASES["default"]["CONN_MAX_AGE"] = conn_max_age(
        sys.argv, env.int("DATABASE_CONN_MAX_AGE", default=60)
    )
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        # Server-side binding, and a statement run 5 times on a connection is prepared: the integration
        # API's hot queries skip PostgreSQL's planning (most of their cost). Turn off behind a
        # transaction-mode pooler (PgBouncer < 1.21), which cannot keep prepared statements.
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            {"server_side_binding": True, "prepare_threshold": 5}
        )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "tenants.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
PASSWORD_RESET_TIMEOUT = 60 * 60 * 24  # seconds
# Password-reset requests, counted in the cache per hour: per address (the victim's inbox) and per
# client IP (one sender spraying addresses). Over either limit the page answers the same, no email.
PASSWORD_RESET_LIMIT_PER_EMAIL = env.int("PASSWORD_RESET_LIMIT_PER_EMAIL", default=3)
PASSWORD_RESET_LIMIT_PER_IP = env.int("PASSWORD_RESET_LIMIT_PER_IP", default=20)
PASSWORD_RESET_LIMIT_WINDOW = 60 * 60  # seconds

# Login throttling. Failures are counted per (email, IP) pair, so an attacker hammering an
# address from their own IP locks only themselves out, never the real owner on another IP.
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_FORM_FIELD = "username"
# Emails log in case-insensitively, so failures are counted case-insensitively too.
AXES_USERNAME_CALLABLE = "tenants.forms.login_throttle_username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0)
# django-ipware is not installed, so axes would ignore AXES_IPWARE_PROXY_COUNT and see every login
# behind a proxy as the proxy's address: the password-reset throttle's reading of the client's
# address (X-Forwarded-For, N proxies from the right) decides for both.
AXES_CLIENT_IP_CALLABLE = "tenants.throttle.client_ip"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Redis when REDIS_URL is set (production, tests); otherwise the embedded default.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    _queue_dir = VAR_DIR / "celery" / "queue"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "store_processed": False,
        # kombu's default is ./control in the working directory; keep everything under var/.
        "control_folder": str(VAR_DIR / "celery" / "control"),
    }
# The dev mailbox (DEBUG only, tenants.dev_mailbox): a cache the web process and the worker share,
# so mail the worker sends is readable too (the embedded default's LocMemCache is per process).
CACHES["dev_mailbox"] = (
    CACHES["default"]
    if REDIS_URL
    else {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(VAR_DIR / "dev-mailbox"),
    }
)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# A worker logs what tasks print at this level; the console mailer prints every email, which is
# information, not a warning (Celery's default).
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"

# Mail: the console in development, SMTP (EMAIL_URL=smtp+tls://user:pass@host:587) in production.
# Django 6.1's MAILERS (EMAIL_BACKEND and EMAIL_HOST* are deprecated).
_email = env.email_url("EMAIL_URL", default="consolemail://")
_email_options = {
    "host": _email.get("EMAIL_HOST"),
    "port": _email.get("EMAIL_PORT"),
    "username": _email.get("EMAIL_HOST_USER"),
    "password": _email.get("EMAIL_HOST_PASSWORD"),
    "use_tls": _email.get("EMAIL_USE_TLS"),
    "use_ssl": _email.get("EMAIL_USE_SSL"),
    "timeout": env.int("EMAIL_TIMEOUT", default=20),
}
_smtp = _email["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"


def mail_backend(*, debug: bool, configured: str) -> str:
    """`make run` (DEBUG, the console mailer): the console, plus a copy of each message for the
    signed-in user's dev mailbox (/t/<slug>/dev/mailbox/). Anything else as configured."""
    if debug and configured == "django.core.mail.backends.console.EmailBackend":
        return "tenants.dev_mailbox.DevMailboxBackend"
    return configured


_email["EMAIL_BACKEND"] = mail_backend(debug=DEBUG, configured=_email["EMAIL_BACKEND"])
MAILERS = {
    "default": {
        "BACKEND": _email["EMAIL_BACKEND"],
        "OPTIONS": {k: v for k, v in _email_options.items() if v not in (None, "")} if _smtp else {},
    }
}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Allowance <billing@allowance.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Invitations expire; a link older than this is refused.
INVITATION_TTL = timedelta(days=env.int("INVITATION_TTL_DAYS", default=7))
# How often an API key's last_used_at is written at most (seconds): one write a minute, not a request.
API_KEY_LAST_USED_RESOLUTION = 60

# --- Plans and billing ---------------------------------------------------------------------------
# The free trial (AI Agents): its length and session allowance seed the trial plan in the catalog.
TRIAL_DAYS = env.int("TRIAL_DAYS", default=14)
TRIAL_SESSIONS = env.int("TRIAL_SESSIONS", default=50)
# "Trial ending soon" from this many days before the end.
TRIAL_ENDING_SOON_DAYS = env.int("TRIAL_ENDING_SOON_DAYS", default=3)
# ... or from this share (percent) of the trial sessions used (sessions_billing).
TRIAL_ENDING_SOON_PERCENT = env.int("TRIAL_ENDING_SOON_PERCENT", default=90)
# After a failed payment, access continues this long before the subscription is suspended.
GRACE_PERIOD_DAYS = env.int("GRACE_PERIOD_DAYS", default=7)
# Plan codes a new tenant starts on.
NEW_TENANT_PLANS = env.list("NEW_TENANT_PLANS", default=["agents-trial", "credits-free"])
# Hide the Billing tab for a deployment whose billing happens elsewhere (S03).
BILLING_TAB_ENABLED = env.bool("BILLING_TAB_ENABLED", default=True)

# AI credits. The sidebar's quick access to the AI Credits page and the low-balance email appear
# when this share of the period's plan credits is used (percent), or when the available balance
# falls below CREDITS_LOW_BALANCE credits (C03).
CREDITS_NUDGE_USED_PERCENT = env.int("CREDITS_NUDGE_USED_PERCENT", default=80)
CREDITS_LOW_BALANCE = env.int("CREDITS_LOW_BALANCE", default=10)
# A hold of credits lasts this long unless the request says otherwise (seconds, 1 to 86,400).
CREDITS_HOLD_TTL_DEFAULT = 900

# The payment gateway: "local" (in-process stand-in, DEBUG only) or "stripe".
PAYMENT_GATEWAY = env.str("PAYMENT_GATEWAY", default="local" if DEBUG else "stripe")
# The webhook secret signs what the local gateway sends in development; this value is public, so
# with DEBUG off there is no default, and the settings refuse to load without Stripe and both of
# its keys (billing_portal's system check runs for manage.py only, not under gunicorn: refuse
# here, as for SECRET_KEY).
DEVELOPMENT_WEBHOOK_SECRET = "whsec_local_development_only"
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default=DEVELOPMENT_WEBHOOK_SECRET if DEBUG else "")
STRIPE_WEBHOOK_TOLERANCE = env.int("STRIPE_WEBHOOK_TOLERANCE", default=300)  # seconds
# Seconds to wait for Stripe's answer per try, and how many times a call is tried again (network
# errors, 409, 429, 5xx, with the SDK's backoff and the same idempotency key). Together they must stay
# well inside gunicorn's 60 s worker timeout: the settings refuse more than 45 s in the worst case.
STRIPE_TIMEOUT = env.int("STRIPE_TIMEOUT", default=10)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
STRIPE_CALL_BUDGET = 50  # seconds; gunicorn kills a worker at 60

# Prefixes every idempotency key this deployment sends to the payment gateway, so two deployments
# sharing one Stripe account (staging and production, say) never replay each other's requests.
# Default: derived from SECRET_KEY (stable per deployment, different between deployments).
BILLING_INSTALLATION_ID = env.str(
    "BILLING_INSTALLATION_ID", default="alw-" + hashlib.sha256(SECRET_KEY.encode()).hexdigest()[:12]
)

# The local stand-in's event delivery: "prompt" (once, in order, on commit) or "late" (kept until the
# next clock tick, then newest first and each twice, as Stripe's retries may deliver them).
LOCAL_GATEWAY_DELIVERY = env.str("LOCAL_GATEWAY_DELIVERY", default="prompt")
# What the local stand-in does once a failed invoice's retries are exhausted, as Stripe's account
# setting does: "unpaid" (what the README asks operators to choose), "cancel" or "past_due".
LOCAL_GATEWAY_WHEN_RETRIES_EXHAUSTED = env.str("LOCAL_GATEWAY_WHEN_RETRIES_EXHAUSTED", default="unpaid")


def payment_settings_problems(
    *, debug: bool, gateway: str, secret_key: str, webhook_secret: str
) -> list[str]:
    """Why these payment settings cannot serve: nothing in DEBUG (the local gateway and its public
    secret are for development); with DEBUG off only Stripe, with both of its keys."""
    if gateway not in ("local", "stripe"):
        return [f"PAYMENT_GATEWAY must be 'local' or 'stripe', not {gateway!r}."]
    if debug:
        return []
    if gateway == "local":
        return ["PAYMENT_GATEWAY=local is the development stand-in: it cannot run with DEBUG off."]
    missing = [] if secret_key else ["STRIPE_SECRET_KEY"]
    if not webhook_secret or webhook_secret == DEVELOPMENT_WEBHOOK_SECRET:
        missing.append("STRIPE_WEBHOOK_SECRET")
    if missing:
        return [f"{' and '.join(missing)} must be set when DEBUG is off (PAYMENT_GATEWAY=stripe)."]
    return []


def stripe_call_problems(*, timeout: int, retries: int) -> list[str]:
    """A Stripe call must give up before gunicorn kills the worker (60 s)."""
    connect = 5  # billing_portal.gateway.stripe_gateway.CONNECT_TIMEOUT
    worst = (retries + 1) * (connect + timeout) + sum(
        min(0.5 * 2 ** (n - 1), 5) for n in range(1, retries + 1)
    )
    if timeout <= 0 or retries < 0 or worst > STRIPE_CALL_BUDGET:
        return [
            f"STRIPE_TIMEOUT={timeout} and STRIPE_MAX_NETWORK_RETRIES={retries} let a Stripe call run "
            f"{worst:g} s; keep it under {STRIPE_CALL_BUDGET} s (gunicorn's worker timeout is 60 s)."
        ]
    return []


if _payment_problems := stripe_call_problems(
    timeout=STRIPE_TIMEOUT, retries=STRIPE_MAX_NETWORK_RETRIES
) + payment_settings_problems(
    debug=DEBUG,
    gateway=PAYMENT_GATEWAY,
    secret_key=STRIPE_SECRET_KEY,
    webhook_secret=STRIPE_WEBHOOK_SECRET,
):
    raise ImproperlyConfigured(" ".join(_payment_problems))

# Where Stripe's hosted pages live: Subscribe and Manage POST to us and we redirect there.
# https://docs.stripe.com/api/checkout/sessions/object#checkout_session_object-url (checkout.stripe.com)
# https://docs.stripe.com/api/customer_portal/sessions/object#portal_session_object-url (billing.stripe.com)
# Override for a custom domain (https://docs.stripe.com/payments/checkout/custom-domains).
STRIPE_HOSTED_ORIGINS = env.list(
    "STRIPE_HOSTED_ORIGINS", default=["https://checkout.stripe.com", "https://billing.stripe.com"]
)

MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# Production hardening: on whenever DEBUG is off; `manage.py check --deploy` reports nothing.
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True


def content_security_policy(*, gateway: str, hosted_origins: Sequence[str]) -> dict[str, list[str]]:
    """Our own origin only: pages carry no inline script, handler or style (behaviour is in
    static/js/app.js, htmx is told not to eval or inject styles). `form-action` also allows Stripe's
    hosted pages when Stripe is the gateway: Chrome applies it to the redirect that follows a form's
    POST (Subscribe → Checkout, Manage → the customer portal)."""
    form_action = [CSP.SELF, *(hosted_origins if gateway == "stripe" else ())]
    return {
        "default-src": [CSP.SELF],
        "script-src": [CSP.SELF],
        "style-src": [CSP.SELF],
        "img-src": [CSP.SELF, "data:"],
        "object-src": [CSP.NONE],
        "base-uri": [CSP.SELF],
        "frame-ancestors": [CSP.NONE],
        "form-action": form_action,
    }


_csp = content_security_policy(gateway=PAYMENT_GATEWAY, hosted_origins=STRIPE_HOSTED_ORIGINS)
# Enforced whenever DEBUG is off (production, the test suite). In DEBUG only reported (the browser's
# console lists what it would block): Django's technical error pages carry inline styles and scripts.
SECURE_CSP = {} if DEBUG else _csp
SECURE_CSP_REPORT_ONLY = _csp if DEBUG else {}
# Powerful browser features no page of ours uses, switched off for every page (and any frame).
PERMISSIONS_POLICY = [
    "accelerometer",
    "autoplay",
    "camera",
    "display-capture",
    "geolocation",
    "gyroscope",
    "magnetometer",
    "microphone",
    "midi",
    "payment",
    "usb",
    "xr-spatial-tracking",
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "permission_denied": {"()": "config.log_filters.PermissionDeniedWithoutTraceback"},
        "payment_required": {"()": "config.log_filters.PaymentRequiredAtInfo"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # A 403 is a refusal we meant, not a failure: one line, no traceback. A 402 is an expected
        # answer of the API (a limit, a balance): INFO, not WARNING.
        "django.request": {"filters": ["permission_denied", "payment_required"]},
    },
}
