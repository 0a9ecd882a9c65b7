/**
 * The page `make test-browser` opens: it calls /calculate and /compare on
 * the API given as ?api=<base URL>, with the generated client, and shows
 * each answer, or the browser's refusal. The requests come from
 * /request.json, served beside the page.
 */
import { createApiClient, type Schemas } from "../index.js";

type Requests = {
  calculate: Schemas["CalculateRequest"];
  compare: Schemas["CompareRequest"];
};

function show(id: string, text: string): void {
  document.getElementById(id)!.textContent = text;
}

/** "ok <answer as JSON>", "error <status> <answer>" or "refused <why>". */
async function shown(call: () => Promise<{ data?: unknown; error?: unknown; response: Response }>): Promise<string> {
  try {
    const { data, error, response } = await call();
    return data !== undefined
      ? `ok ${JSON.stringify(data)}`
      : `error ${response.status} ${JSON.stringify(error)}`;
  } catch (refusal) {
    // A browser that refuses a cross-origin answer says only "Failed to fetch".
    return `refused ${refusal}`;
  }
}

async function main(): Promise<void> {
  const base = new URLSearchParams(location.search).get("api");
  if (!base) throw new Error("no ?api=<base URL>");
  show("api", base);
  const requests: Requests = await (await fetch("/request.json")).json();
  const api = createApiClient(base);
  show("calculate", await shown(() => api.POST("/calculate", { body: requests.calculate })));
  show("compare", await shown(() => api.POST("/compare", { body: requests.compare })));
}

main()
  .catch((problem) => show("calculate", `page failed: ${problem}`))
  .finally(() => document.body.setAttribute("data-done", "true"));
