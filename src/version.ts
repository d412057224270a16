/** Replaced at bundle time by build/bundle.mjs with the package version. */
declare const __EDGEBUS_VERSION__: string | undefined
export const VERSION: string = typeof __EDGEBUS_VERSION__ === 'string' ? __EDGEBUS_VERSION__ : '0.0.0-dev'
