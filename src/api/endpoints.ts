/**
 * The endpoints idsync calls, as templates (for metrics: one label per endpoint, not per id)
 * with the permission each needs (docs/api-contract.md): what a run stopped by 403s
 * tells the operator to ask for. Paths are matched by their end, so any base prefix works.
 */
interface Endpoint {
  method: string;
  template: string;
  pattern: RegExp;
  /** The permission, as the Identities web app names it; none: any authenticated user. */
  permission?: string;
}

const SEGMENT = '[^/]+';
const ENDPOINTS: readonly Endpoint[] = [
  { method: 'POST', template: '/api/v1/authenticate', pattern: /\/api\/v1\/authenticate$/ },
  { method: 'GET', template: '/api/v1/renewToken', pattern: /\/api\/v1\/renewToken$/ },
  { method: 'POST', template: '/api/v1/people/fileDocuments/upload', pattern: /\/api\/v1\/people\/fileDocuments\/upload$/, permission: 'Add Identity Files' },
  { method: 'GET', template: '/api/v1/people/{personId}/fileDocuments/{documentId}/data', pattern: new RegExp(`/api/v1/people/${SEGMENT}/fileDocuments/${SEGMENT}/data$`), permission: 'Read Identity Files' },
  { method: 'GET', template: '/api/v1/people/enrollmentPhoto/{faceId}', pattern: new RegExp(`/api/v1/people/enrollmentPhoto/${SEGMENT}$`) },
  { method: 'GET', template: '/api/v1/people/detectionPhoto/{faceId}/{detectionId}', pattern: new RegExp(`/api/v1/people/detectionPhoto/${SEGMENT}/${SEGMENT}$`) },
  { method: 'GET', template: '/api/v1/people/detections/personId/{personId}', pattern: new RegExp(`/api/v1/people/detections/personId/${SEGMENT}$`), permission: 'Read Detections' },
  { method: 'GET', template: '/api/v1/people/detections/faceId/{faceId}', pattern: new RegExp(`/api/v1/people/detections/faceId/${SEGMENT}$`), permission: 'Read Detections' },
  { method: 'GET', template: '/api/v1/people', pattern: /\/api\/v1\/people$/, permission: 'Read All Identity' },
  { method: 'GET', template: '/api/v1/people/{personId}', pattern: new RegExp(`/api/v1/people/${SEGMENT}$`), permission: 'Read All Identity' },
];

/** The endpoint a request went to (path without its query): its template and permission; `other` when unknown. */
export function endpointOf(method: string, path: string): { template: string; permission?: string } {
  const bare = path.split('?')[0]!;
  const found = ENDPOINTS.find((e) => e.method === method.toUpperCase() && e.pattern.test(bare));
  if (!found) return { template: 'other' };
  return found.permission ? { template: found.template, permission: found.permission } : { template: found.template };
}
