import { Hono } from "hono";
import type { AppEnv } from "../env";
import { requireUser } from "../lib/auth";

export const me = new Hono<AppEnv>().use(requireUser).get("/", (c) => c.json({ user: c.get("user") }));
