"""A small Express-like project for the offline tests (uploaded through the real API)."""

from __future__ import annotations

APP_JS = """\
const express = require("express");
const { getUser, listUsers } = require("./routes/users");
const posts = require("./routes/posts");
const { PORT } = require("./config");

const app = express();
app.use(express.json());

// TODO: add authentication before the routes
app.get("/users", listUsers);
app.get("/users/:id", getUser);
app.use("/posts", posts);

app.listen(PORT, () => {
  console.log(`listening on ${PORT}, getUser ready`);
});

module.exports = app;
"""

USERS_JS = """\
const { formatName } = require("../utils");

const users = [{ id: 1, first: "Ada", last: "Lovelace" }];

/* getUser answers GET /users/:id */
function getUser(req, res) {
  const user = users.find((u) => u.id === Number(req.params.id));
  if (!user) return res.status(404).json({ error: "getUser: not found" });
  res.json({ ...user, name: formatName(user) });
}

function listUsers(req, res) {
  res.json(users.map((u) => ({ id: u.id, name: formatName(u) })));
}

module.exports = { getUser, listUsers };
"""

POSTS_JS = """\
const express = require("express");
const router = express.Router();

// TODO: paginate
router.get("/", (req, res) => res.json([]));
router.post("/", (req, res) => res.status(201).json(req.body));

module.exports = router;
"""

UTILS_JS = """\
function formatName(user) {
  return `${user.first} ${user.last}`;
}

const isEmpty = (value) => value === undefined || value === null || value === "";

module.exports = { formatName, isEmpty };
"""

CONFIG_JS = """\
const PORT = Number(process.env.PORT || 3000);

module.exports = { PORT };
"""

TEST_JS = """\
const request = require("supertest");
const app = require("../src/app");

test("GET /users/1 uses getUser", async () => {
  const res = await request(app).get("/users/1");
  expect(res.status).toBe(200);
});
"""

PACKAGE_JSON = """\
{
  "name": "demo-api",
  "version": "1.0.0",
  "main": "src/app.js",
  "scripts": { "start": "node src/app.js", "test": "jest" }
}
"""

README_MD = """\
# demo-api

A small Express API. Run it with `npm start` (port 3000).
TODO: document the posts routes.
"""

DOCS_API_MD = """\
# API

- GET /users -> listUsers
- GET /users/:id -> getUser
"""

PROJECT: dict[str, str] = {
    "package.json": PACKAGE_JSON,
    "README.md": README_MD,
    "docs/api.md": DOCS_API_MD,
    "src/app.js": APP_JS,
    "src/config.js": CONFIG_JS,
    "src/routes/posts.js": POSTS_JS,
    "src/routes/users.js": USERS_JS,
    "src/utils.js": UTILS_JS,
    "test/app.test.js": TEST_JS,
}
