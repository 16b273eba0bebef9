// The few host globals the runtime uses. They exist in browsers, Node >= 18
// and React Native; declaring them here (instead of pulling in the DOM or
// Node libraries) keeps DOM assumptions out of the core at compile time.
declare function setTimeout(fn: () => void, ms?: number): unknown;
declare function clearTimeout(handle: unknown): void;

// For the HTTP transports (src/http.ts).
declare class AbortController {
  readonly signal: unknown;
  abort(): void;
}
declare class TextDecoder {
  decode(input?: Uint8Array, options?: { stream?: boolean }): string;
}
declare class URL {
  constructor(url: string);
  protocol: string;
  search: string;
  hash: string;
  toString(): string;
}
declare const fetch: unknown;
