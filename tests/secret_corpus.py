"""Planted secrets and legitimate snippets for the no-secret-on-disk tests.

Secrets are built at run time from random pieces, so that this file does not itself look
like it leaks one to a secret scanner.
"""

from __future__ import annotations

import base64
import json
import random
import string

ALNUM = string.ascii_letters + string.digits


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def formatted_token(rng: random.Random, index: int) -> str:
    """A token in one of the formats providers use, chosen by ``index``."""
    upper = string.ascii_uppercase + string.digits
    kinds = [
        lambda: "gh" + "p_" + _pick(rng, ALNUM, 36),
        lambda: "github_" + "pat_" + _pick(rng, ALNUM, 30),
        lambda: "AK" + "IA" + _pick(rng, upper, 16),
        lambda: "xo" + "xb-" + _pick(rng, string.digits, 12) + "-" + _pick(rng, ALNUM, 24),
        lambda: "sk_" + "live_" + _pick(rng, ALNUM, 28),
        lambda: "sk-" + "proj-" + _pick(rng, ALNUM, 40),
        lambda: "h" + "f_" + _pick(rng, ALNUM, 34),
        lambda: "gl" + "pat-" + _pick(rng, ALNUM, 20),
        lambda: "AI" + "za" + _pick(rng, ALNUM, 35),
        lambda: _jwt(rng),
    ]
    return kinds[index % len(kinds)]()


def _jwt(rng: random.Random) -> str:
    def part(document: dict[str, object]) -> str:
        raw = json.dumps(document).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    header = part({"alg": "HS256", "typ": "JWT"})
    claims = part({"sub": _pick(rng, ALNUM, 12), "n": rng.randrange(10**9)})
    return f"{header}.{claims}.{_pick(rng, ALNUM + '-_', 43)}"


def opaque_token(rng: random.Random) -> str:
    """A secret with no recognisable format: only its name or its source gives it away."""
    return _pick(rng, ALNUM, rng.randrange(20, 41))


LEGITIMATE_CODE = [
    'url = "https://api.example.com/v1/items?access_token=" + os.environ["API_TOKEN"]',
    "url = 'https://api.example.com/v1?access_token=' + os.environ['TOKEN']",
    "url = f\"https://api.example.com/v1?access_token={os.environ['API_TOKEN']}\"",
    'query = "?token=" + token + "&page=2"',
    'tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")',
    'tokens = tokenizer("hello world", truncation=True)["input_ids"]',
    "max_tokens = 512",
    'max_tokens = "512"',
    'response = client.complete(prompt, max_tokens=256, model="small-model")',
    'key_columns = ["id", "date", "region"]',
    'key_columns = "id,date,region"',
    'api_key = os.environ.get("API_KEY")',
    'api_key = os.environ.get("OPENAI_API_KEY", "")',
    'api_key = os.environ["API_KEY"]',
    "api_key = os.getenv('API_KEY')",
    'password = getpass.getpass("Password: ")',
    "password = keyring.get_password('db', 'analyst')",
    'token = Path("~/.token").expanduser().read_text().strip()',
    "secret = secrets_client.get_secret_value(SecretId=secret_name)['SecretString']",
    'secret_name = "prod/warehouse/readonly"',
    'credentials_path = "service-account.json"',
    'credentials_file = Path("creds") / "gcp.json"',
    'token_url = "https://oauth2.example.com/token"',
    'password_field = "password"',
    'password_env_var = "DB_PASSWORD"',
    'api_key_env = "OPENAI_API_KEY"',
    'token_type = "bearer"',
    'sort_key = "timestamp"',
    'primary_key = "user_id"',
    "rng_key = jax.random.PRNGKey(0)",
    'label_key = "species"',
    'partition_key = "event_date"',
    'cache_key = f"{user}:{day}"',
    'key = "region"',
    'keys = ["a", "b", "c"]',
    "token_ids = [101, 2023, 2003, 102]",
    'token_type_ids = encoded["token_type_ids"]',
    'attention_mask = encoded["attention_mask"]',
    'df = pd.read_csv("sales.csv", parse_dates=["day"])',
    "df = df.groupby('region', as_index=False)['revenue'].sum()",
    'model = LogisticRegression(max_iter=1000, solver="lbfgs").fit(X, y)',
    'features = df[["sepal_length", "sepal_width"]].to_numpy()',
    "print(f'accuracy: {acc:.3f}')",
    'plt.title("Revenue by region")',
    'conn = sqlite3.connect("warehouse.db")',
    'engine = create_engine(f"postgresql://{user}:{password}@{host}/{db}")',
    "dsn = f\"postgresql://analyst:{os.environ['DB_PASSWORD']}@db.internal/sales\"",
    'headers = {"Authorization": "Bearer " + token}',
    'headers = {"Authorization": f"Bearer {token}"}',
    'params = {"access_token": token, "limit": 100}',
    'params = {"api_key": os.environ["API_KEY"]}',
    'client = OpenAI(api_key=os.environ["OPENAI_API_KEY"])',
    "client = boto3.client('s3', region_name='eu-west-1')",
    's3.download_file("my-bucket", "data/2024.parquet", "local.parquet")',
    'session = requests.Session()\nsession.headers["Authorization"] = "Bearer " + token',
    "auth = (user, password)",
    'auth = HTTPBasicAuth(user, os.environ["PASSWORD"])',
    "if password == confirm:\n    save(password)",
    "def login(user, password=None):\n    return connect(user, password)",
    "def fetch(url, token=None, timeout=30):\n    return get(url, token=token)",
    "password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt())",
    "password_min_length = 12",
    "password_required = True",
    "secret_santa = shuffle(names)",
    "is_secret = False",
    'SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]',
    'AWS_SECRET_ACCESS_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY")',
    "credentials = service_account.Credentials.from_service_account_file(path)",
    "creds = get_credentials()",
    "token = get_token(client_id, client_secret)",
    "token = oauth.fetch_token(token_url, client_secret=client_secret)",
    "api_token = None",
    'api_token = ""',
    'api_token = "<your token here>"',
    'api_token = "YOUR_API_TOKEN"',
    'password = "changeme"',
    'password = "********"',
    'api_key = "..."',
    'api_key = "${API_KEY}"',
    'config = {"password": "{{ vault.db_password }}"}',
    "!pip install -q scikit-learn",
    "%time model = fit(X, y)",
    "%%capture\nimport noisy_module",
    "files = !ls data/*.csv",
    "x = 1  # the password is kept in the vault, not here",
    "# token: read from the environment below\ntoken = os.environ['TOKEN']",
    '"""Docstring: set API_TOKEN in the environment before running."""',
    'os.environ["TOKENIZERS_PARALLELISM"] = "false"',
    'os.environ["MLFLOW_TRACKING_URI"] = "http://localhost:5000"',
    'nltk.download("punkt")',
    'text = "the secret of good coffee is the grind"',
    'message = "token expired; please log in again"',
    'error = "invalid password for user analyst"',
    'prompt = "Enter your password:"',
    "key_fn = lambda row: row['date']",
    'sorted(items, key=lambda item: item["score"])',
    'keyword = "forecast"',
    'monkey = "capuchin"',
    'hockey_team = "Canadiens"',
    "turkey_weight_kg = 7",
    'passage = "It was the best of times"',
    'passenger_count = df["passenger_count"].sum()',
    'compass_heading = "NNW"',
    "bypass_cache = True",
    "tokenized = [t.lower() for t in text.split()]",
    "detokenize = tokenizer.decode",
    "vocab_tokens = set(tokens)",
    "credit_limit = 5000",
    "keystroke_log = []",
    'secretary_name = "Alex"',
    "token_budget = 4096",
    'signing_key_id = "key-2024-01"',
    'ssh_key_path = "~/.ssh/id_ed25519"',
    "await asyncio.sleep(0.1)",
    'result = await client.get("/v1/status")',
]
"""State code that must never be refused: data science, and the recommended ways of
handling credentials."""

LEGITIMATE_VALUES: list[object] = [
    {"status": 200, "items": [1, 2, 3]},
    {"token_count": 812, "max_tokens": 1024},
    {"key_columns": ["id", "date"]},
    {"tokenizer": "bert-base-uncased"},
    {"secret_name": "prod/warehouse"},
    {"password_field": "password"},
    {"token_type": "bearer", "expires_in": 3600},
    "the quick brown fox",
    ["alpha", "beta", "gamma"],
    {"url": "https://api.example.com/v1/items?page=2"},
]
"""Values (facts, contexts) that must be recorded as they are."""
