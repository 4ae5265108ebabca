declare namespace Cloudflare {
  interface Env {
    LIBSQL_URL: string;
    RUNNER_TOKEN: string;
  }
}
