/** @jsxImportSource hono/jsx */
import type { Child } from "hono/jsx";

export type PageName = "login" | "upload" | "jobs" | "job" | "runners" | "users" | "tokens" | "webhooks" | "account";

export interface LayoutProps {
  title: string;
  page: PageName;
  data?: Record<string, string | number>;
  children?: Child;
}

/** Bumped with the app version so browsers fetch new client modules after a deploy. */
export function assetUrl(path: string, version: string): string {
  return `/assets/${path}?v=${encodeURIComponent(version)}`;
}

const NAV: { href: string; label: string; page: PageName; admin?: boolean }[] = [
  { href: "/", label: "Upload", page: "upload" },
  { href: "/jobs", label: "Jobs", page: "jobs" },
  { href: "/tokens", label: "API tokens", page: "tokens" },
  { href: "/webhooks", label: "Webhooks", page: "webhooks" },
  { href: "/account", label: "Account", page: "account" },
  { href: "/admin/runners", label: "Runners", page: "runners", admin: true },
  { href: "/admin/users", label: "Users", page: "users", admin: true },
];

/**
 * The HTML shell every page shares. No inline script or style (the CSP forbids both): behaviour comes from the
 * one module script, and page parameters travel as data-* attributes on <body>.
 */
export function Layout(props: LayoutProps & { version: string }) {
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(props.data ?? {})) data[`data-${k}`] = String(v);
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light dark" />
        <title>{`${props.title} · Video Refresher`}</title>
        <link rel="icon" href="/assets/icon.svg" type="image/svg+xml" />
        <link rel="stylesheet" href={assetUrl("app.css", props.version)} />
        <script type="module" src={assetUrl("js/client/main.js", props.version)}></script>
      </head>
      <body data-page={props.page} {...data}>
        <a class="skip-link" href="#main">
          Skip to content
        </a>
        {props.page === "login" ? null : (
          <header class="topbar">
            <a class="brand" href="/jobs">
              Video Refresher
            </a>
            <nav aria-label="Main">
              <ul class="nav-links">
                {NAV.map((item) => (
                  <li hidden={item.admin ? true : undefined} data-admin-only={item.admin ? "" : undefined}>
                    <a href={item.href} aria-current={item.page === props.page ? "page" : undefined}>
                      {item.label}
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
            <div class="account">
              <button type="button" id="notify-toggle" class="button button-small" aria-pressed="false" hidden>
                Notifications: off
              </button>
              <span id="nav-user" class="muted"></span>
              <button type="button" id="logout" class="button button-small">
                Log out
              </button>
            </div>
          </header>
        )}
        <main id="main" tabindex={-1}>
          <p id="page-message" class="message" role="alert" hidden></p>
          {props.children}
        </main>
        <div id="announcer" class="visually-hidden" role="status" aria-live="polite" aria-atomic="true"></div>
        <noscript>
          <p class="message">Video Refresher needs JavaScript enabled.</p>
        </noscript>
      </body>
    </html>
  );
}
