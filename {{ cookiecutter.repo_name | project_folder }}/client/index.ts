/**
 * The API's typed client, for the frontend: every path, request and answer
 * is typed from schema.d.ts, which `make client` writes from the app's own
 * OpenAPI schema. Built on openapi-fetch; see docs/deploy.md, "Wire the
 * Vercel frontend".
 *
 *   const api = createApiClient(); // NEXT_PUBLIC_API_URL, as the Vercel app sets it
 *   const { data, error } = await api.POST("/calculate", { body: { household } });
 */
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

export type { components, paths };
/** The request and answer bodies by name: Schemas["CalculateRequest"], ... */
export type Schemas = components["schemas"];
export type Household = Schemas["Household"];

// Next.js writes NEXT_PUBLIC_ values into the build; a plain page has no
// `process` at all (so this does not need Node's types either).
declare const process: { env: { NEXT_PUBLIC_API_URL?: string } } | undefined;

/** The API's base URL as the Vercel app has it: NEXT_PUBLIC_API_URL. */
export function apiUrl(): string {
  const url =
    typeof process === "undefined" ? undefined : process.env.NEXT_PUBLIC_API_URL;
  if (!url) {
    throw new Error(
      "NEXT_PUBLIC_API_URL is not set (`make vercel-env` prints the commands " +
        "that set it); or pass the base URL to createApiClient",
    );
  }
  return url;
}

/** A client of the API at baseUrl (default: NEXT_PUBLIC_API_URL). */
export function createApiClient(baseUrl: string = apiUrl()) {
  return createClient<paths>({ baseUrl: baseUrl.replace(/\/+$/, "") });
}

export type ApiClient = ReturnType<typeof createApiClient>;
