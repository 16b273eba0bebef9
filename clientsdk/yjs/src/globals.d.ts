// The host timers the provider uses; they exist in browsers, Node >= 18 and
// React Native. Declared here rather than pulling in the DOM or Node types.
declare function setTimeout(fn: () => void, ms?: number): unknown;
declare function clearTimeout(handle: unknown): void;
