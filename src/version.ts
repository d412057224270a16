/** Replaced at bundle time by build/bundle.mjs with the package version. */
declare const __EDGEBUS_VERSION__: string | undefined
export const VERSION: string = typeof __EDGEBUS_VERSION__ === 'string' ? __EDGEBUS_VERSION__ : '0.0.0-dev'

/** The browser client (src/client), minified, put in by build/bundle.mjs. */
declare const __EDGEBUS_CLIENT_JS__: string | undefined
export const CLIENT_JS: string | null = typeof __EDGEBUS_CLIENT_JS__ === 'string' ? __EDGEBUS_CLIENT_JS__ : null

/** The dashboard page (dashboard/), one HTML file with its CSS and JS inside, put in by build/bundle.mjs. */
declare const __EDGEBUS_DASHBOARD_HTML__: string | undefined
export const DASHBOARD_HTML: string | null = typeof __EDGEBUS_DASHBOARD_HTML__ === 'string' ? __EDGEBUS_DASHBOARD_HTML__ : null
