// The few autocannon types the benches use (the package ships no types of its own).
declare module 'autocannon' {
  namespace autocannon {
    interface Options {
      url?: string;
      connections?: number;
      pipelining?: number;
      duration?: number;
      method?: string;
      headers?: Record<string, string>;
      body?: string | Buffer;
    }
    interface Result {
      '2xx': number;
      non2xx: number;
      errors: number;
      latency: { p99: number; average: number };
    }
  }
  function autocannon(options: autocannon.Options): Promise<autocannon.Result>;
  export default autocannon;
}
