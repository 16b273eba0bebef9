// Preloaded with `node --import` to run a test under React 18: the packages
// react-18 and react-dom-18 (npm aliases of react@18 and react-dom@18) stand
// in for react and react-dom, for ES modules (a resolve hook) and CommonJS
// (Testing Library and react-dom require react) alike.
import Module, { register } from "node:module";

const map = (s) => s.replace(/^react(?=\/|$)/, "react-18").replace(/^react-dom(?=\/|$)/, "react-dom-18");

register("data:text/javascript," + encodeURIComponent(`
  const map = ${map.toString()};
  export async function resolve(specifier, context, next) {
    return next(map(specifier), context);
  }
`));

const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return resolveFilename.call(this, map(request), ...rest);
};
