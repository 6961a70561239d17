/**
 * The API's routes, matched segment by segment. Literal segments compare case-insensitively
 * (ASP.NET routing does). Id segments must be GUIDs: ASP.NET routes declared `{id:guid}`
 * simply do not match otherwise, so a malformed id answers 404, like a missing one.
 */
import { isGuid } from './guid.ts';

export type RouteName =
  | 'authenticate'
  | 'renewToken'
  | 'enrollmentPhoto'
  | 'detectionPhoto'
  | 'upload'
  | 'documentData'
  | 'detectionsByPerson'
  | 'detectionsByFace'
  | 'people'
  | 'person';

interface RouteSpec {
  name: RouteName;
  method: 'GET' | 'POST';
  /** ':x' marks a GUID parameter */
  pattern: string[];
}

const ROUTES: RouteSpec[] = [
  { name: 'authenticate', method: 'POST', pattern: ['api', 'v1', 'authenticate'] },
  { name: 'renewToken', method: 'GET', pattern: ['api', 'v1', 'renewtoken'] },
  { name: 'enrollmentPhoto', method: 'GET', pattern: ['api', 'v1', 'people', 'enrollmentphoto', ':faceId'] },
  { name: 'detectionPhoto', method: 'GET', pattern: ['api', 'v1', 'people', 'detectionphoto', ':faceId', ':detectionId'] },
  { name: 'upload', method: 'POST', pattern: ['api', 'v1', 'people', 'filedocuments', 'upload'] },
  { name: 'documentData', method: 'GET', pattern: ['api', 'v1', 'people', ':personId', 'filedocuments', ':documentId', 'data'] },
  { name: 'detectionsByPerson', method: 'GET', pattern: ['api', 'v1', 'people', 'detections', 'personid', ':personId'] },
  { name: 'detectionsByFace', method: 'GET', pattern: ['api', 'v1', 'people', 'detections', 'faceid', ':faceId'] },
  { name: 'people', method: 'GET', pattern: ['api', 'v1', 'people'] },
  { name: 'person', method: 'GET', pattern: ['api', 'v1', 'people', ':personId'] },
];

export type RouteMatch =
  | { kind: 'route'; name: RouteName; params: Record<string, string> }
  | { kind: 'method-not-allowed'; allow: string }
  | { kind: 'not-found' };

export function matchRoute(method: string, pathname: string): RouteMatch {
  const segments = pathname.split('/').filter((s) => s.length > 0);
  const allowed: string[] = [];
  for (const route of ROUTES) {
    const params = matchPattern(route.pattern, segments);
    if (!params) continue;
    if (route.method === method || (method === 'HEAD' && route.method === 'GET')) return { kind: 'route', name: route.name, params };
    allowed.push(route.method);
  }
  return allowed.length > 0 ? { kind: 'method-not-allowed', allow: [...new Set(allowed)].join(', ') } : { kind: 'not-found' };
}

function matchPattern(pattern: string[], segments: string[]): Record<string, string> | undefined {
  if (pattern.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    let s: string;
    try {
      s = decodeURIComponent(segments[i]!);
    } catch {
      return undefined;
    }
    if (p.startsWith(':')) {
      if (!isGuid(s)) return undefined;
      params[p.slice(1)] = s;
    } else if (p !== s.toLowerCase()) return undefined;
  }
  return params;
}
