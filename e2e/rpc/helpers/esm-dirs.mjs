// Module resolution hook (registered by backend.mjs with module.register):
// @anycable/serverless-js 0.1.0 ships ESM built for bundlers, with
// extensionless directory imports (`from './rpc'`) that plain node rejects
// (ERR_UNSUPPORTED_DIR_IMPORT). For relative imports from inside that package
// only, retry as `<spec>/index.js`, then `<spec>.js`.
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (e) {
    const fromPkg = context.parentURL?.includes("/node_modules/@anycable/serverless-js/");
    if (!fromPkg || !specifier.startsWith(".") || !/^ERR_(UNSUPPORTED_DIR_IMPORT|MODULE_NOT_FOUND)$/.test(e?.code)) throw e;
    for (const alt of [`${specifier}/index.js`, `${specifier}.js`]) {
      try { return await next(alt, context); } catch {}
    }
    throw e;
  }
}
